from hpc_train.cli.main import main
import sys
sys.exit(main())
