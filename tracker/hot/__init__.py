"""Hot tier storage: the PostgreSQL / RisingWave table the hot writer fills and the hot query tier reads."""
