"""The KMS service layer: the rules of every AWS operation, with no transport code.
One module per operation family; adapters (gRPC, AWS JSON) only translate."""
