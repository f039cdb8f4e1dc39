"""What trains the models: prompt sampling, losses, the SAM-style training round, whole-object
augmentations, the frozen teachers and their embedding cache. The toolbox adapters
(:mod:`efficientsam_plugins.openmmlab`) run these in their loops."""
