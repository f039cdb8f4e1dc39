# EfficientSAM-S finetuning on SA-1B: the Ti recipe (see efficientsam_ti_sa1b.py) with the ViT-Small
# encoder, started as in the paper from a SAMI ViT-S run (configs/sami/sami_vit-small_sam-vit-h_in1k-400e.py).
# efficientsam_s_sa1b_from_released.py starts from the released EfficientSAM-S encoder instead.
_base_ = './efficientsam_ti_sa1b.py'

arch = 's'
sami_checkpoint = 'work_dirs/sami_vit-small_sam-vit-h_in1k-400e/epoch_400.pth'
encoder_init = dict(checkpoint=sami_checkpoint, prefix='backbone.')
model = dict(model_config=arch, encoder_init=encoder_init)
custom_hooks = [dict(type='EfficientSamExportHook', filename=f'efficientsam_{arch}_sa1b.pt')]
