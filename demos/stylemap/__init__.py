"""The StyleMap tab (StyleMapGAN, Kim et al., CVPR 2021): `engine` (models and tensors, no
Gradio), `handlers`, `handlers_transplant` and `handlers_semantic` (functions of the app
context and the widgets' values), `ui` (`build_tab`; `demos.TABS` loads it). Importers name
the submodule they use."""
