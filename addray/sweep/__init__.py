"""The Ray layer: the study driver, its trainable, scheduler, recorder, cluster
helpers and the phase 3 search. The only part of addray that imports Ray."""
