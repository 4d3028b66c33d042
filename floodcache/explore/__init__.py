"""`explore`: a local page to look at every evaluated view, the pretrained and fine-tuned masks
and prompts of the user's own, answered by the decoders from the cached embeddings.

    run_explore(config, announce)   serve until Ctrl-C (`run`)
    open_explorer(config)           the bound server, for a caller that serves it itself
    Explorer                        the table, a view and answers, without HTTP (`explorer`)
"""
