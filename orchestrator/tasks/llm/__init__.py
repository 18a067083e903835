"""Decoder LLMs (causal language models) as Hedgerow tasks: the model wrapper, text windows, perplexity."""
