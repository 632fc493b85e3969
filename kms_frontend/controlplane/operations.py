"""The control plane's one table: ``cloudhsmv2`` operation name -> handler (every operation of
botocore's model). Find an operation's rules by its name in the module named here."""
from __future__ import annotations

from . import backups, clusters, hsms, tags
from .service import Operation

OPERATIONS: dict[str, Operation] = {
    # clusters.py
    "CreateCluster": Operation(clusters.create_cluster, changes_state=True),
    "DescribeClusters": Operation(clusters.describe_clusters),
    "InitializeCluster": Operation(clusters.initialize_cluster, changes_state=True),
    "ModifyCluster": Operation(clusters.modify_cluster, changes_state=True),
    "DeleteCluster": Operation(clusters.delete_cluster, changes_state=True),
    # hsms.py
    "CreateHsm": Operation(hsms.create_hsm, changes_state=True),
    "DeleteHsm": Operation(hsms.delete_hsm, changes_state=True),
    # backups.py
    "DescribeBackups": Operation(backups.describe_backups),
    "DeleteBackup": Operation(backups.delete_backup, changes_state=True),
    "RestoreBackup": Operation(backups.restore_backup, changes_state=True),
    "ModifyBackupAttributes": Operation(backups.modify_backup_attributes, changes_state=True),
    "CopyBackupToRegion": Operation(backups.copy_backup_to_region, changes_state=True),
    "GetResourcePolicy": Operation(backups.get_resource_policy),
    "PutResourcePolicy": Operation(backups.put_resource_policy, changes_state=True),
    "DeleteResourcePolicy": Operation(backups.delete_resource_policy, changes_state=True),
    # tags.py
    "TagResource": Operation(tags.tag_resource, changes_state=True),
    "UntagResource": Operation(tags.untag_resource, changes_state=True),
    "ListTags": Operation(tags.list_tags),
}
