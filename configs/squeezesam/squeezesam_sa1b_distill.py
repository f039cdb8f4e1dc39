# squeezesam_sa1b.py distilled from a frozen teacher ("distills the power of SAM"): each round's
# prompts are also given to the teacher and the mask loss is 0.5 x ground truth + 0.5 x teacher
# (weight=1.0: the teacher alone). The teacher runs online and is never saved in checkpoints;
# cache_dir stores its image embeddings per image view (image, crop window, size), which later epochs
# and runs reuse when the view recurs (always with RandomObjectCrop(probability=0)).
#   SAM ViT-H instead:  --cfg-options model.teacher.kind=sam model.teacher.config=vit_h
#                                     model.teacher.checkpoint=sam_vit_h
_base_ = './squeezesam_sa1b.py'

model = dict(teacher=dict(_delete_=True, kind='efficientsam', config='s', checkpoint='efficientsam_s', weight=0.5,
                          cache_dir=None))
custom_hooks = [dict(type='MeanLossOverRanksHook'),
                dict(type='SqueezeSamExportHook', filename='squeezesam_sa1b_distill.pt')]
