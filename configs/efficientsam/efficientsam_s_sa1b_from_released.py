# Variant of efficientsam_s_sa1b.py for users without a SAMI run: the encoder starts from the
# released EfficientSAM-S encoder (zoo name, downloaded on first use), the decoder from scratch
# (so iterative clicks stay on). Not the paper's start: that encoder was already finetuned on SA-1B.
_base_ = './efficientsam_s_sa1b.py'

encoder_init = dict(checkpoint='efficientsam_s', prefix='image_encoder.')
model = dict(encoder_init=encoder_init)
