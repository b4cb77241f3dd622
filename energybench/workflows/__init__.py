"""Workflows made of training, evaluation and reporting: the reproduction of the paper tables
(plan, jobs, index page) and `sample`."""
