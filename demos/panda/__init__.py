"""The PandA tab (parts and appearances, Oldfield et al., ICLR 2023): `engine` (models and
tensors, no Gradio), `factors` (the authors' Algorithm 1) and `solver` (its objective solved
fast: `fit`), `sources` (factor files), `handlers` and `handlers_photo` (functions of the app
context and the widgets' values), `ui` (`build_tab`; `demos.TABS` loads it). Importers name the
submodule they use."""
