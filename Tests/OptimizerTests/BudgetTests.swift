import Foundation
import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct BudgetTests {
    @Test(arguments: [
        ("1/16", Budget.ratio(1.0 / 16)), ("0.0625", .ratio(0.0625)), (" 1/16 ", .ratio(1.0 / 16)), ("1", .ratio(1)),
        ("2/64", .ratio(1.0 / 32)), ("123456B", .bytes(123_456)), ("850MiB", .bytes(850 * 1_048_576)),
        ("1.2GB", .bytes(1_200_000_000)), ("2KiB", .bytes(2048)), ("3KB", .bytes(3000)), ("2mb", .bytes(2_000_000)),
        ("1GiB", .bytes(1_073_741_824)), ("1.0bpp", .bitsPerParameter(1)), ("16bpp", .bitsPerParameter(16)),
        ("0.5BPP", .bitsPerParameter(0.5)),
    ])
    func parsesEveryForm(text: String, expected: Budget) throws {
        #expect(try Budget(parsing: text) == expected)
    }

    @Test(arguments: ["", "abc", "1/0", "0", "0/16", "-1/16", "1.5", "2/1", "17bpp", "0bpp", "-1bpp", "bpp", "MiB",
                      "0.1B", "12XB", "1/16/2", "1e3MB", "nan", "inf", "1,5", "/16", "1/"])
    func rejectsMalformedNamingTheFieldAndForms(text: String) {
        do {
            _ = try Budget(parsing: text, field: "--budget")
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect(error.description.contains("--budget"))
            #expect(error.description.contains("'\(text)'"))
            #expect(error.description.contains("1/16") && error.description.contains("MiB") && error.description.contains("bpp"))
        }
    }

    /// 300×200 and 100×50: 65000 parameters, F16 size 1 040 000 bits.
    @Test func resolvesToBits() throws {
        let shapes = [(rows: 300, columns: 200), (rows: 100, columns: 50)]
        #expect(try Budget(parsing: "1/16").bits(forShapes: shapes) == 65_000)
        #expect(try Budget(parsing: "0.1").bits(forShapes: shapes) == 104_000)
        #expect(try Budget(parsing: "2bpp").bits(forShapes: shapes) == 130_000)
        #expect(try Budget(parsing: "1KiB").bits(forShapes: shapes) == 8192)
        // 1/3 of 1 040 000 = 346 666.67, rounded down.
        #expect(try Budget(parsing: "1/3").bits(forShapes: shapes) == 346_666)
    }

    @Test func oneBitPerParameterEqualsOneSixteenth() throws {
        let shapes = [(rows: 4096, columns: 11008)]
        #expect(try Budget(parsing: "1bpp").bits(forShapes: shapes) == Budget(parsing: "1/16").bits(forShapes: shapes))
    }

    @Test func canonicalDescription() throws {
        #expect(try Budget(parsing: "0.0625").description == "1/16")
        #expect(try Budget(parsing: "850MiB").description == "891289600B")
        #expect(try Budget(parsing: "1.5bpp").description == "1.5bpp")
    }

    @Test func bitsMenu() throws {
        #expect(try BitMenu.parse("16,8,4,3,2,0") == [16, 8, 4, 3, 2])
        #expect(try BitMenu.parse("2, 8,3") == [8, 3, 2])
        #expect(try BitMenu.parse("1") == [1])
        for bad in ["", "0", "5", "8,8", "8,,3", "x", "16,32", "-2"] {
            #expect(throws: BudgetError.self, "'\(bad)'") { try BitMenu.parse(bad) }
        }
        do { _ = try BitMenu.parse("8,5"); Issue.record("accepted 5") } catch {
            #expect(error.description.contains("--bits") && error.description.contains("5"))
        }
    }

    /// The service's list form follows the CLI's text form rule for rule, and names its field.
    @Test func bitsMenuAsAList() throws {
        #expect(BitMenu.default == [16, 8, 4, 3, 2, 1])
        #expect(try BitMenu.parse(BitMenu.text(BitMenu.default + [0])) == BitMenu.default)
        for (list, text) in [([16, 8, 4, 3, 2, 0], "16,8,4,3,2,0"), ([2, 8, 3], "2,8,3"), ([1], "1")] {
            #expect(try BitMenu.parse(list) == BitMenu.parse(text))
        }
        for bad in [[], [0], [5], [8, 8], [16, 32], [-2]] {
            do { _ = try BitMenu.parse(bad); Issue.record("accepted \(bad)") } catch {
                #expect(error.description.hasPrefix("invalid bits '"), "\(error)")
            }
        }
    }

    /// A given budget keeps the user's text (plans record it) beside its meaning.
    @Test func givenBudgetKeepsItsText() throws {
        let given = try GivenBudget(parsing: "0.0625")
        #expect(given.budget == .ratio(0.0625) && given.text == "0.0625")
        #expect(GivenBudget.ratio(1.0 / 16).text == "1/16")
        #expect(throws: BudgetError.malformed(field: "budgets[1]", value: "1/0",
                                              reason: "the denominator must be positive; expected \(Budget.acceptedForms)")) {
            try GivenBudget(parsing: "1/0", field: "budgets[1]")
        }
    }

    /// Comparison candidates: the strategies, and the two baselines by name.
    @Test func candidates() throws {
        let library = try ProfileLibrary.builtIn()
        for name in Candidate.defaultNames + ["preset:single-2", "exact"] {
            #expect(try Candidate(parsing: name, library: library).name == name)
        }
        #expect(try Candidate(parsing: "bitdelta", library: library).strategy == nil)
        #expect(try Candidate(parsing: "low-rank", library: library).strategy == Strategy(parsing: "preset:low-rank", library: library))
        #expect(try Candidate(parsing: "greedy", library: library).defaultScope == .type)
        #expect(throws: StrategyNameError.self) { try Candidate(parsing: "fastest", library: library) }
        do { _ = try Candidate(parsing: "preset:nope", library: library); Issue.record("accepted preset:nope") } catch {
            #expect(error.description.contains("no precision preset named 'nope'"))
        }
    }
}

@Suite struct BudgetSweepTests {
    @Test func nineBudgetsFromOneSixtyFourthToAQuarterArePowersOfRootTwo() throws {
        let sweep = try BudgetSweep(parsing: "1/64:1/4")
        #expect(sweep.count == BudgetSweep.defaultCount)
        let budgets = sweep.budgets
        #expect(budgets.map(\.text) == ["1/64", "1/45.25", "1/32", "1/22.63", "1/16", "1/11.31", "1/8", "1/5.657", "1/4"])
        for (i, b) in budgets.enumerated() {
            guard case let .ratio(alpha) = b.budget else { Issue.record("\(b) is not a ratio"); continue }
            #expect(abs(alpha / (pow(2, Double(i) / 2) / 64) - 1) < 1e-3)
            #expect(try GivenBudget(parsing: b.text) == b)  // the text is the budget
        }
    }

    @Test func endsMayBeBitsPerParameterAndTheCountIsOptional() throws {
        let sweep = try BudgetSweep(parsing: "0.25bpp:0.0625:3")
        #expect(sweep.budgets.map(\.text) == ["1/64", "1/32", "1/16"])
    }

    @Test(arguments: [
        ("1/4:1/64", "FROM must be below TO"), ("1/16", "two or three parts"), ("1/64:1/4:2", "COUNT must be a whole number in 3…65"),
        ("1/64:1/4:x", "COUNT"), ("1/64:1GiB", "is a size"), ("1/64:lots", "'lots' is not a budget"), ("1/64:1/4:9:1", "two or three parts"),
        ("1/64:2", "'2' is not a budget"),
    ])
    func rejectsMalformedSweeps(text: String, reason: String) {
        do {
            _ = try BudgetSweep(parsing: text)
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect(error.description.contains("--sweep") && error.description.contains("'\(text)'"), "\(error)")
            #expect(error.description.contains(reason), "\(error)")
            #expect(error.description.contains("1/64:1/4"))
        }
    }
}
