# EfficientSAM-S finetuning on SA-1B: the Ti recipe (see efficientsam_ti_sa1b.py) with the ViT-Small
# encoder. For the paper's start, point encoder_init at a SAMI ViT-S run (prefix='backbone.').
_base_ = './efficientsam_ti_sa1b.py'

arch = 's'
encoder_init = dict(checkpoint='efficientsam_s', prefix='image_encoder.')
model = dict(model_config=arch, encoder_init=encoder_init)
custom_hooks = [dict(type='EfficientSamExportHook', filename=f'efficientsam_{arch}_sa1b.pt')]
