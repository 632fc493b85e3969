"""The frontend's view of HSM clusters: discovery by asking nodes, and the
kmsuser sessions each connected custom key store holds on them."""
