"""Draw a digit and watch every trained model answer: a small web app over `predict` (`mnistbench serve`).

models.py loads the runs and answers one image with all of them; app.py is the Starlette app (the page
and the JSON API); server.py listens and runs uvicorn. The page lives in static/. Needs the `serve` extra
(starlette, uvicorn).
"""
