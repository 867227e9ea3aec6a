"""Neural Collage tab: sCBN label collaging and spatial feature blending (Suzuki et al. 2019).

`engine` (pictures, the sCBN label collage; ImageNet classes come from `core.classes`), `blend`
(Eq. 3's feature blending) and `photo` (Eq. 4's photo fit, the paste-back) are models and
tensors, no Gradio; `state` is a person's typed session values; `handlers` and
`handlers_photo` are the widgets' functions; `ui` lays out the page (`build_tab`; `demos.TABS`
loads it).
"""
