"""The HDF5 embedding cache: its format and checksums (`format`), reading a complete one
(`reader`), checking one (`verify`), and writing one crash-safely: parts and the lock
(`writer`), the final file assembled from the parts (`assembly`), and the parts removed
in the background (`removal`).

Above `data` and `sam`, below every stage that reads or writes a cache."""
