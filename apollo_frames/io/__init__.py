"""Files in and out: streaming Parquet/CSV runs chunk by chunk."""
