"""One module per tab: pure engine functions plus `build_tab(ctx)` for the UI."""
