"""Singer tap for conversation data from Perform & Engage 365, onQ and Respondent."""
