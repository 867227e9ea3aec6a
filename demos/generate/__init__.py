"""Generate tab: sample any registered generator from a seed (a class for class-conditional
ones), with truncation; show the session's photo code; load a saved run back.

`engine` (no Gradio), `handlers`, `ui` (`build_tab`); `demos.TABS` loads `ui`."""
