"""Framework-free scoring core: features, training, calibration, scores, grades, reasons, drift."""
