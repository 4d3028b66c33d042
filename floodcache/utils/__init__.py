"""Small mechanisms every stage shares: results written whole (`atomic`), file hashes
(`hashing`), free memory (`memory`) and the refusal of mismatched settings (`differences`).
Nothing here imports a floodcache stage."""
