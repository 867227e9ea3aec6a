"""The SAM tab (spatially adaptive multi-layer inversion, Parmar et al., CVPR 2022): `engine`
(models and tensors, no Gradio), `handlers` (functions of the app context and the widgets'
values), `ui` (`build_tab`; `demos.TABS` loads it). Importers name the submodule they use."""
