// Scope in which SIMT-backend error reports are expected (collected instead of failing the test).
#pragma once

#include <kdfuse/simt/runtime.h>

#include <string>
#include <vector>

namespace kdftest {

class ExpectSimtError {
public:
    ExpectSimtError();
    ~ExpectSimtError();
    ExpectSimtError(const ExpectSimtError&) = delete;
    ExpectSimtError& operator=(const ExpectSimtError&) = delete;
    void record(const std::string& message);
    const std::vector<std::string>& messages() const { return messages_; }
    // The single report collected so far (empty if none or several).
    std::string only() const { return messages_.size() == 1 ? messages_[0] : std::string(); }

private:
    std::vector<std::string> messages_;
};

}  // namespace kdftest
