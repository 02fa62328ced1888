"""The support tickets both ticket classifiers learn from (make_model.py here and in
../support-tickets-wordpiece): short texts in three classes, written here with a fixed seed, so
nothing is downloaded."""

import random

PHRASES = {
    "billing": [
        "I was charged twice for my subscription",
        "please refund the last invoice",
        "my credit card payment failed",
        "why is there an extra fee on my bill",
        "cancel my plan and stop charging me",
        "the invoice amount is wrong",
    ],
    "delivery": [
        "my parcel has not arrived yet",
        "the package was delivered to the wrong address",
        "where is my order, tracking shows no update",
        "the courier left the box outside in the rain",
        "shipping is taking more than two weeks",
        "the delivery was damaged when it arrived",
    ],
    "technical": [
        "the app crashes when I open settings",
        "I cannot log in, the password reset email never comes",
        "the website shows an error after the update",
        "sync stopped working on my phone",
        "the download is stuck at ninety percent",
        "the screen stays black after I start the program",
    ],
}
OPENINGS = ["", "hello, ", "hi team, ", "urgent: ", "good morning, "]
CLOSINGS = ["", " thanks", " please help", " what can I do", " this is frustrating"]


def corpus():
    """The tickets and their classes: each phrase four times, with a random opening and closing."""
    rng = random.Random(0)
    texts, classes = [], []
    for name, phrases in PHRASES.items():
        for phrase in phrases:
            for _ in range(4):
                texts.append(rng.choice(OPENINGS) + phrase + rng.choice(CLOSINGS))
                classes.append(name)
    return texts, classes
