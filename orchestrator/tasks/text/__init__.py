"""Text tasks: sentence-embedding models from a Hugging Face folder, judged on a corpus of real English.

Needs the `transformers` extra (`pip install 'hedgerow[transformers]'`); importing this
package does not import transformers, so the core install stays small.
"""
