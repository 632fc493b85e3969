"""``python -m hsm_node.mgmt`` runs ``hsm-mgmt``."""
from hsm_node.mgmt.cli import main

main()
