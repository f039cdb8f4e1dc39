# squeezesam_sa1b.py on the official input layout (image + box + positive clicks, 5 channels): no
# negative-click or previous-mask channel, so the export has exactly the official build_squeeze_sam_base
# keys. Outlier clicks are then positive clicks outside the target that the model learns to ignore,
# and iterative clicks are positive only (on missed pixels).
_base_ = './squeezesam_sa1b.py'

model = dict(model_config=dict(_delete_=True, negative_click_channel=False, previous_mask_channel=False))
custom_hooks = [dict(type='MeanLossOverRanksHook'),
                dict(type='SqueezeSamExportHook', filename='squeezesam_sa1b_official-input.pt')]
