"""Collage tab: composition by latent regression (Chai, Wulff, Isola, ICLR 2021).

`engine` (compose, regenerate, inpaint, blend; no Gradio), `refine` (Enc+LBFGS), `finetune`
(the regressor tuned on one photo), `independence` (the paper's s_c, Table 1): models and
tensors. `domain`: the regressor + generator pair and a person's photo in its frame, from the
registry. `handlers`: the buttons' functions. `ui`: `build_tab`, what `demos.TABS` loads.
"""
