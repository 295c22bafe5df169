"""Identity: who is the same customer across departments' extracts.
Owns the stitching of identifiers into customer keys and the links between extracts.
Imports only the store.
"""
