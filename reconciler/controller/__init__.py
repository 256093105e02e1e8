"""The controller: the reconcile step, workers, scans and the sources they walk."""
