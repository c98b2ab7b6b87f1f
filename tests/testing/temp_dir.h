// A temporary folder for one test's files (kubeconfigs, certificates),
// removed with everything in it when the object goes.
//
// Errors: the constructor aborts when mkdtemp fails (a test cannot go on
// without it); Write() leaves a short or missing file on a write error,
// which the test reading it then reports.
//
// Concurrency: const methods may be called from any thread.
#ifndef SLUICE_TESTS_TESTING_TEMP_DIR_H_
#define SLUICE_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace sluice::testing {

class TempDir {
 public:
  TempDir();  // /tmp/sluice-test-XXXXXX
  ~TempDir();

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const;  // returns its path

 private:
  std::string path_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_TESTING_TEMP_DIR_H_
