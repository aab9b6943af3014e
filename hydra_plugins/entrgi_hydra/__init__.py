"""entrgi's Hydra plugins: a sweeper that skips finished jobs, a GPU-pinning parallel launcher, and the
search-path plugin that registers what entrgi's conf/ needs whenever it composes."""
