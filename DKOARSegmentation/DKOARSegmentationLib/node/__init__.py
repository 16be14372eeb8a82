"""Running unattended: a DICOM node that returns structure sets (``dkoar serve``) and batches over
many CTs (``dkoar batch``), both with the pipeline of ``dkoar segment``.

config    the node's settings (TOML file and flags)
queue     the on-disk queue (SQLite WAL): series and deliveries, resumed after any kill
receiver  the Storage SCP (pynetdicom): allow-list, limits, CT slices to disk
worker    contours a complete series, queues its deliveries (or a failure RTSTRUCT)
sender    C-STOREs results to the destinations, with retry and back-off
server    the three on their threads
status    ``dkoar serve status``
batch     ``dkoar batch`` on local processes; batch_ray on Ray
"""
