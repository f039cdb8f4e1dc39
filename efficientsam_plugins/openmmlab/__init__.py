"""All OpenMMLab glue, in one place; nothing here re-implements the core, it only wraps it.

A config imports the registration module of its toolbox through ``custom_imports``:

* ``efficientsam_plugins.openmmlab.mmdet``: the SAMI ViT backbone, the simple pyramid neck,
  ``LayerNorm2d``;
* ``efficientsam_plugins.openmmlab.mmseg``: the same backbone and neck, the COCO-semantic dataset;
* ``efficientsam_plugins.openmmlab.mmpretrain``: SAMI pretraining (algorithm, student, decoder,
  head, loss, teachers), its pipeline steps, the same backbone as classifier, a small COCO dataset;
* ``efficientsam_plugins.openmmlab.efficientsam``: EfficientSAM finetuning on SA-1B (model, data,
  promptable metric, export hook).

Registration: a class of this package carries its toolbox's decorator (``@MODELS.register_module()``)
and is registered under its own name; what several toolboxes share (``SAMIViT``, ``SAMISimpleFPN``,
``LayerNorm2d``) is registered once in mmengine's root registry, which every toolbox's registry
searches. Core classes (``modeling/``, ``training/`` import no toolbox) are registered by a
``register_module(module=...)`` call, also under their own names.

Each also registers what is mmengine-wide: the layer-decay optimiser constructor, ``zoo://NAME``
checkpoints and safe (``weights_only``) loading of mmengine checkpoints. The pieces: ``backbone``
(the one ``SAMIViT``), ``neck``, ``layer_decay``, ``checkpoints``, ``hooks``, ``launch`` (the
launchers' runner), ``sami``/``transforms``/``extract``/``datasets`` (SAMI), ``finetune``/``sa1b``/
``metric`` (EfficientSAM finetuning).
"""
