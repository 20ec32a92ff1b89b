"""Training loops (train.py, train_vae.py, train_ldm.py) and the evaluation of what they trained."""
