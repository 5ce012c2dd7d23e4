"""What every bench script shares (each script imports `lib.<module>`; bench/ is the script folder,
so it is on sys.path without any path manipulation):

  env        the environment of a benchmark process and of the Snakemake runs it starts: hub off,
             evaluation data only from $TYR_DATA_DIR or an explicit path, torch threads
  args       the common command-line arguments (--smoke, --out, a finished run and its target,
             the WikiText-2 windows)
  results    result files bench/results/<date>-<host>-<kind>.{md,json} (a temp folder in smoke mode)
  snakemake  launching the project's Snakefile with its profile, timed; Snakemake's incomplete marks
  meter      CPU/wall time of wrapped library functions, failing loudly when one is never called
  config     config.yaml merged with presets as Snakemake merges them; the search options of a config
  fitspeed   incremental vs naive fitness evaluations per second (the pipeline's "fitness speedup")
  exported   a genome exported and its perplexity
  tinyrun    a finished run of a tiny random model, built with product code: what smoke modes run on
"""
