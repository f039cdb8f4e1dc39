# sami_b_ade20k.py with layer-wise lr decay 0.9 through SAMIViT.get_layer_depth on top of the
# paper's backbone lr x0.1: the first block then trains at 0.1 * 0.9^12 (~0.028) of the head's lr,
# 3.5x slower than the paper's recipe. Layer decay is the BEiT/MAE segmentation convention; this
# variant is there to compare against it.
_base_ = './sami_b_ade20k.py'

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.9))
