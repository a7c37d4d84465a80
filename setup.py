"Package metadata comes from settings.ini (nbdev 2 convention)."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
c = cfg['DEFAULT']
requirements = c.get('requirements', '').split()
# the core's and every extra's requirements are written by tools/extras.py from env/requirements.in (`extra_NAME = ...`)
extras = {key.removeprefix('extra_'): value.split() for key, value in c.items() if key.startswith('extra_')}
extras['dev'] = extras['all'] + c.get('dev_requirements', '').split()   # the workbench: every extra and its tools

setuptools.setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    license='Apache-2.0', license_files=['LICENSE', 'NOTICE'],   # in the wheel's .dist-info/licenses
    author=c['author'], author_email=c['author_email'],
    packages=setuptools.find_packages(include=['mlfin', 'mlfin.*']),
    include_package_data=True, python_requires='>=' + c['min_python'],
    install_requires=requirements, extras_require=extras, zip_safe=False,
    entry_points={'console_scripts': c['console_scripts'].split(),
                  'nbdev': [f"{c['lib_path']}={c['lib_path']}._modidx:d"]},
)
