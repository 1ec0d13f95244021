"""facescale.eval: the standard face-recognition evaluation protocols.

- ``verification``: LFW-style bins (10 folds, flip, XNorm, TAR@FAR, AUC, EER); ``sets`` finds them.
- ``ijb`` (1:1) and ``ijb_identification`` (1:N) on IJB-B/IJB-C, read by ``ijb_layout``, embedded
  by ``ijb_features``, pooled and scored by ``templates``; ``synth_ijb`` writes a synthetic set.
- ``metrics``: ROC, TAR at FAR, AUC, EER; ``plots`` and ``report`` write the results;
  ``runner`` is ``facescale eval``; ``torch_embed`` embeds with a backbone during training.
"""
