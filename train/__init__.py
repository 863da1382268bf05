"""Training code for FAI's autoencoder (needs the ``train`` extra: torch, tqdm, matplotlib)."""
