"""The fault harness (:mod:`faults.harness`), its command line (``python -m faults``) and the
app its worker processes run (:mod:`faults.fault_app`)."""
