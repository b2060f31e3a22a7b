"""Section 3 of the SPANet paper: a clean image from a rain video, the human review loop, and assembly of the
accepted clips into an SPA-Data-style training set.

* :mod:`.algorithm` the notebook's computation, vectorised and streamed (pure numpy)
* :mod:`.reference` the same computation pixel by pixel (the yardstick for tests and the benchmark)
* :mod:`.io` video files / frame folders in, PNG / JSON out; :class:`.io.FrameCache`
* :mod:`.pipeline` one clip -> clean image + record (``python -m src.make_clean``)
* :mod:`.review` the accept / reject loop (``python -m src.make_clean.review``)
* :mod:`.assemble` accepted clips -> SPA-Data layout (``python -m src.make_clean.assemble``)
* :mod:`.cli` what the three Hydra entry points share (option checks, error lines, exit status)

Never imports ``src.models`` or ``src.lit``.
"""
