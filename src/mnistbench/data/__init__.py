"""Data: IDX parsing and verification, data set location, on-device splits, batches and augmentation."""
