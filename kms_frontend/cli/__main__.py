"""``python -m kms_frontend.cli`` runs ``kms``."""
from kms_frontend.cli.main import main

main()
