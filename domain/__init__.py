"""Types shared by the API, the workflows and the activities; imports nothing of ours."""
