"""Getting and checking data sets: the fetch script's Python half, the reference counts of
complete copies, and the image-class folder the readers share. Standard library only."""
