"""Time series and recommendation papers: PSA-GAN, recurrent intensity modelling."""
