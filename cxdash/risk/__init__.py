"""Risk: which customers are about to leave, why, and what to do next.
Owns the churn features, the model, its reasons, the next best action, the customer card and the activation log.
Reads the store and metrics.
"""
