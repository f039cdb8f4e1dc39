# Variant of efficientsam_s_sa1b.py that gives the released EfficientSAM-S negative clicks,
# which its weights lack: the whole released model is the start, the prompt encoder gains a
# negative-click embedding (label 0; the only new weights), and training samples SAM's iterative
# clicks from the error region: positive on missed pixels, negative on false positives. The export
# loads with build_efficient_sam(<its .config.json>) and EfficientSamPredictor accepts label 0;
# tools/eval_promptable.py --protocol sam uses negative clicks with it.
_base_ = './efficientsam_s_sa1b.py'

model = dict(
    model_config=dict(_delete_=True, embed_dim=384, num_heads=6, negative_points=True),
    checkpoint='efficientsam_s',
    encoder_init=None,
    num_iterative_clicks=4,
    eval_protocol=dict(preset='sam'))
custom_hooks = [dict(type='EfficientSamExportHook', filename='efficientsam_s_sa1b_negative_clicks.pt')]
