"""The study: many runs planned, executed, analysed and reported (`mnistbench compare` and `report`)."""
