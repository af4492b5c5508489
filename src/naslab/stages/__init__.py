"""The stages of a run, each from the composed config: build (config -> objects), search, the study
modes (ground truth, ranking, report) and final training / summary. `naslab.pipeline` sequences them."""
